"""Model names and pretrained weights: timm names (``vit_small_patch8_224.dino``), ``hf-hub:ORG/NAME``
and ``torchvision:NAME``; weights from a local file or the local Hugging Face cache.

* ``--pretrained`` takes timm's pretrained weights of the name (its tag, or timm's default tag)
  from the Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``).
  With ``HF_HUB_OFFLINE=1``, or no connection to the Hub (one probe, at most 5 s), and no cached
  copy the run stops with one error naming the repository and the cache; online, timm downloads it
  into that cache. ``--pretrained-file FILE`` reads the
  weights from FILE instead (a timm ``model.safetensors`` / ``pytorch_model.bin``), through timm's
  own loading (its key filters, class-count adaptation), never touching the network.
* ``hf-hub:ORG/NAME`` reads the repository's ``config.json`` (architecture, model arguments,
  pretrained config) from the same cache (or downloads it when online), as timm does.
* ``torchvision:NAME`` builds the timm model of the same layout (torchvision ResNets and ResNeXts:
  their state-dict keys are timm's) with torchvision's evaluation transform (resize, crop,
  bilinear, ImageNet mean/std) as data config; ``--pretrained`` reads torchvision's weight file from
  the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and never downloads it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SimpoolBenchError
from .files import check_zip_entries

HF_PREFIX = "hf-hub:"
TV_PREFIX = "torchvision:"
#: timm's weight file names on the Hub, in the order timm tries them.
HF_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
_TRUE = ("1", "on", "yes", "true")


@dataclass
class ModelName:
    """What a ``--model`` name resolves to.

    arch: the timm model name to build (with its pretrained tag, if any).
    source: 'timm' | 'hf-hub' | 'torchvision'.
    model_args: timm arguments from an hf-hub config.json.
    pretrained_cfg: the hf-hub repository's pretrained config (timm's), or None.
    data_config: data-config overrides (torchvision transforms), or {}.
    weights_url: torchvision: the URL of the weights whose transform ``data_config`` is.
    """

    given: str
    arch: str
    source: str = "timm"
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] | None = None
    data_config: dict[str, Any] = field(default_factory=dict)
    weights_url: str | None = None


def hf_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (or as huggingface_hub read it at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as set now: ``HF_HUB_CACHE``, ``HF_HOME/hub``, or the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _split_revision(repo: str) -> tuple[str, str | None]:
    name, _, rev = repo.partition("@")
    return name, (rev or None)


def cached_hf_file(repo: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` cached locally for Hub repository ``repo`` (``ORG/NAME[@REV]``), or None."""
    from huggingface_hub import try_to_load_from_cache

    name, rev = _split_revision(repo)
    for fn in filenames:
        got = try_to_load_from_cache(name, fn, cache_dir=str(hf_cache_dir()), revision=rev)
        if isinstance(got, str) and Path(got).is_file():
            return Path(got)
    return None


def _offline_error(what: str, repo: str) -> SimpoolBenchError:
    return SimpoolBenchError(
        f"{what}: no cached copy of Hugging Face repository {repo!r} in {hf_cache_dir()} and HF_HUB_OFFLINE is set; "
        f"fetch it once online (or unset HF_HUB_OFFLINE), or pass --pretrained-file FILE"
    )


#: Seconds to wait for a TCP connection to the Hub before calling it unreachable.
HUB_PROBE_TIMEOUT_S = 5.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub (``HF_ENDPOINT``, default https://huggingface.co) cannot be reached
    now, or None where it can or a proxy is set (the proxy decides). One TCP connection, at most
    ``HUB_PROBE_TIMEOUT_S``: without it, an offline machine (a cluster's compute node) waits through
    huggingface_hub's retries, about 30 s a file, before the same error."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
    except ValueError:  # a malformed port: leave it to huggingface_hub's own error
        return None
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as e:
        return f"{host}:{port} cannot be reached ({e.strerror or type(e).__name__})"
    return None


def _unreachable_error(what: str, repo: str, why: str) -> SimpoolBenchError:
    return SimpoolBenchError(
        f"{what}: no cached copy of Hugging Face repository {repo!r} in {hf_cache_dir()}, and {why}; "
        f"fetch it once on a machine with network into that cache, or pass --pretrained-file FILE"
    )


def _hf_config(repo: str) -> Path:
    path = cached_hf_file(repo, ("config.json",))
    if path is not None:
        return path
    if hf_offline():
        raise _offline_error(f"--model {HF_PREFIX}{repo}", repo)
    why = hub_unreachable()
    if why is not None:
        raise _unreachable_error(f"--model {HF_PREFIX}{repo}", repo, why)
    from huggingface_hub import hf_hub_download

    name, rev = _split_revision(repo)
    try:
        return Path(hf_hub_download(name, "config.json", revision=rev, cache_dir=str(hf_cache_dir())))
    except Exception as e:  # noqa: BLE001 - network/hub errors of every kind
        raise SimpoolBenchError(f"--model {HF_PREFIX}{repo}: cannot fetch its config.json ({type(e).__name__}: {e})") from None


def _torchvision_name(name: str, pretrained_file: str | os.PathLike | None = None) -> ModelName:
    """``torchvision:ARCH[.WEIGHTS]``: the weights named (e.g. ``resnet50.IMAGENET1K_V1``), else those
    whose file ``pretrained_file`` is by torchvision's own file name (``resnet50-0676ba61.pth``),
    else the model's DEFAULT weights; their evaluation transform is the data config."""
    import timm

    from .transforms import crop_pct_for

    arch, _, tag = name[len(TV_PREFIX) :].partition(".")
    if not (arch.startswith(("resnet", "resnext", "wide_resnet")) and timm.is_model(arch)):
        raise SimpoolBenchError(
            f"--model {name}: only torchvision ResNets/ResNeXts (e.g. torchvision:resnet50), whose layout is timm's, are "
            f"supported; for other models use the timm name (e.g. vit_base_patch16_224, convnext_tiny, efficientnet_b0)"
        )
    try:
        from torchvision.models import get_model_weights

        weights = get_model_weights(arch)
    except (ValueError, KeyError):
        raise SimpoolBenchError(f"--model {name}: torchvision has no model {arch!r}") from None
    tags = [t for t in weights.__members__ if t != "DEFAULT"]
    if tag:
        if tag not in weights.__members__:
            raise SimpoolBenchError(f"--model {name}: torchvision's {arch} has no weights {tag!r}; it has {', '.join(tags)}")
        w = weights[tag]
    else:
        file_name = Path(pretrained_file).name if pretrained_file is not None else None
        w = next((weights[t] for t in tags if os.path.basename(weights[t].url) == file_name), weights.DEFAULT)
    kw = dict(getattr(w.transforms, "keywords", {}) or {})
    crop, resize = int(kw.get("crop_size", 224)), int(kw.get("resize_size", 256))
    interp = getattr(kw.get("interpolation"), "value", "bilinear")
    data = {
        "input_size": (3, crop, crop),
        "crop_pct": crop_pct_for(crop, resize),
        "interpolation": str(interp),
        "mean": tuple(kw.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(kw.get("std", (0.229, 0.224, 0.225))),
    }
    return ModelName(name, arch, "torchvision", data_config=data, weights_url=w.url)


def resolve_name(name: str, pretrained_file: str | os.PathLike | None = None) -> ModelName:
    """What ``--model NAME`` is: a timm name, ``hf-hub:ORG/NAME`` or ``torchvision:NAME[.WEIGHTS]``
    (``pretrained_file``: the ``--pretrained-file`` a torchvision name's transform may follow)."""
    if name.startswith(TV_PREFIX):
        return _torchvision_name(name, pretrained_file)
    if name.startswith(HF_PREFIX) or name.startswith("hf_hub:"):
        repo = name.split(":", 1)[1]
        from timm.models._hub import _parse_model_cfg, load_cfg_from_json

        path = _hf_config(repo)
        try:
            cfg = load_cfg_from_json(path)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise SimpoolBenchError(f"--model {name}: its config.json ({path}) is not JSON text ({_one_line(e)})") from None
        check_hf_config(cfg, f"--model {name}: its config.json ({path})")
        try:
            pretrained_cfg, arch, model_args = _parse_model_cfg(cfg, {"hf_hub_id": repo, "source": "hf-hub"})
        except (KeyError, TypeError) as e:
            raise SimpoolBenchError(f"--model {name}: its config.json is not a timm model config (missing {e})") from None
        return ModelName(name, arch, "hf-hub", model_args=dict(model_args or {}), pretrained_cfg=dict(pretrained_cfg))
    return ModelName(name, name)


def _one_line(e: BaseException, limit: int = 120) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# The entries of a timm config.json that timm and build_model read, and what each must be.
_HF_CONFIG_TYPES: dict[str, tuple[Any, str]] = {
    "architecture": (lambda v: isinstance(v, str), "a timm model name"),
    "num_classes": (_is_int, "an integer"),
    "model_args": (lambda v: isinstance(v, dict), "an object of timm arguments"),
    "pretrained_cfg": (lambda v: isinstance(v, dict), "an object (timm's pretrained config)"),
}
_HF_PRETRAINED_CFG_TYPES: dict[str, tuple[Any, str]] = {
    "num_classes": (_is_int, "an integer"),
    "input_size": (lambda v: isinstance(v, list) and len(v) == 3 and all(map(_is_int, v)), "[channels, height, width] integers"),
}


def check_hf_config(cfg: Any, what: str) -> None:
    """A Hub ``config.json`` whose entries are not what timm and ``build_model`` read (a JSON list, an
    architecture that is a number, ``model_args`` that is a list...): one error naming the entry,
    not timm's AttributeError or an int() failure later. ``what`` names the file."""
    if not isinstance(cfg, dict):
        raise SimpoolBenchError(f"{what} holds a JSON {type(cfg).__name__}, expected an object (a timm model config)")
    pretrained = cfg.get("pretrained_cfg", cfg)  # timm's legacy configs are one object
    for where, entries, types in (("", cfg, _HF_CONFIG_TYPES), ("pretrained_cfg.", pretrained, _HF_PRETRAINED_CFG_TYPES)):
        if not isinstance(entries, dict):
            continue
        for key, (ok, expected) in types.items():
            if key in entries and not ok(entries[key]):
                raise SimpoolBenchError(f"{what}: {where}{key} is {json.dumps(entries[key])[:80]}, expected {expected}")


def _torchvision_file(name: ModelName) -> Path:
    import torch

    url = str(name.weights_url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise SimpoolBenchError(
            f"--pretrained {name.given}: torchvision's weights {path.name} are not in the torch hub cache "
            f"({path.parent}); simpool-bench never downloads them: fetch {url} there, or pass --pretrained-file FILE"
        )
    return path


@dataclass
class Pretrained:
    """Where pretrained weights come from: ``file`` (always local), ``label`` for provenance
    (``hf-hub:REPO`` or the file), and the timm config overlay that makes timm read ``file``."""

    file: Path | None
    label: str
    overlay: dict[str, Any]
    torchvision: bool = False


def _hub_weight_files(filename: str | None) -> tuple[str, ...]:
    """The Hub files timm's ``load_state_dict_from_hf`` reads the weights from, in its order: those of
    the pretrained config's ``hf_hub_filename`` (its safetensors alternative first: OpenCLIP tags name
    ``open_clip_pytorch_model.bin`` and load ``open_clip_model.safetensors`` when the Hub has it), else
    :data:`HF_WEIGHT_FILES`."""
    if not filename:
        return HF_WEIGHT_FILES
    try:  # timm's own rule (a private helper of its hub module, in every timm 1.0.x)
        from timm.models._hub import _get_safe_alternatives
    except ImportError:  # a timm without it reads the named file only
        return (filename,)
    return (*_get_safe_alternatives(filename), filename)


def locate_pretrained(name: ModelName, pretrained_cfg: dict[str, Any], pretrained_file: str | os.PathLike | None) -> Pretrained:
    """The local weight file of ``name`` (its timm ``pretrained_cfg``): ``pretrained_file`` if given,
    else the cached Hub file; online and not cached, an empty ``file`` (timm downloads to the cache)."""
    if pretrained_file is not None:
        p = Path(pretrained_file)
        if not p.is_file():
            raise SimpoolBenchError(f"--pretrained-file {p}: no such file")
        check_zip_entries(p, f"--pretrained-file {p}")
        return Pretrained(p, str(p), {"file": str(p), "source": ""}, name.source == "torchvision")
    if name.source == "torchvision":
        p = _torchvision_file(name)
        check_zip_entries(p, f"--pretrained {name.given}: {p}")
        return Pretrained(p, f"torchvision:{p.name}", {}, True)
    repo = pretrained_cfg.get("hf_hub_id")
    if not repo:
        raise SimpoolBenchError(f"--pretrained {name.given}: timm lists no Hugging Face weights for it; pass --pretrained-file FILE")
    files = _hub_weight_files(pretrained_cfg.get("hf_hub_filename"))
    cached = cached_hf_file(repo, files)
    if cached is not None:
        check_zip_entries(cached, f"--pretrained {name.given}: cached file {cached}")
        return Pretrained(cached, f"hf-hub:{repo}", {"file": str(cached), "source": ""})
    if hf_offline():
        raise _offline_error(f"--pretrained {name.given}", repo)
    why = hub_unreachable()
    if why is not None:
        raise _unreachable_error(f"--pretrained {name.given}", repo, why)
    return Pretrained(None, f"hf-hub:{repo}", {})


_TIMM_BUILDER_LOG = "timm.models._builder"  # the logger of timm's load_pretrained
_TIMM_MISSING = re.compile(r"Missing keys \((.*)\) discovered while loading pretrained weights")


@contextmanager
def timm_missing_keys() -> Iterator[list[str]]:
    """The model keys that timm's ``load_pretrained`` found missing from the weights while this block
    ran. Loading non-strictly (a classifier of another class count is dropped first: ``num_classes=0``
    for features), timm leaves such tensors at their random values and only logs their names, at INFO;
    this catches that record (and keeps it off the log, as before) and passes every other one on."""
    logger = logging.getLogger(_TIMM_BUILDER_LOG)
    missing: list[str] = []
    shown = logger.getEffectiveLevel()

    def catch(record: logging.LogRecord) -> bool:
        found = _TIMM_MISSING.match(record.getMessage())
        if found:
            missing.extend(k.strip() for k in found.group(1).split(",") if k.strip())
        return record.levelno >= shown

    level = logger.level
    logger.addFilter(catch)
    logger.setLevel(min(shown, logging.INFO))
    try:
        yield missing
    finally:
        logger.removeFilter(catch)
        logger.setLevel(level)


def load_torchvision_weights(net: Any, path: Path, what: str) -> None:
    """Load a torchvision ResNet state dict (weights-only unpickling) into the timm model of the same
    layout, its ``fc`` too unless the model has no classifier (another class count is an error, never a
    random ``fc``); ``what`` names the flag that gave ``path`` in the errors (``--pretrained-file FILE``)."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise SimpoolBenchError(f"{what}: not a readable PyTorch weights file ({type(e).__name__})") from None
    if not isinstance(sd, dict):
        raise SimpoolBenchError(f"{what}: holds a {type(sd).__name__}, expected a state dict")
    key = next((k for k in sd if not isinstance(k, str)), None)
    if key is not None:  # torch's load_state_dict fails on it with an AttributeError
        raise SimpoolBenchError(f"{what}: key {key!r} is a {type(key).__name__}, expected a string (a parameter name)")
    if not int(getattr(net, "num_classes", 0)):  # features only: no classifier (a classifier of other size must fit)
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # same keys, other shapes (e.g. another ResNet width)
        raise SimpoolBenchError(f"{what}: does not fit timm's {net.__class__.__name__} ({' '.join(str(e).split())[:300]})") from None
    if missing or unexpected:
        raise SimpoolBenchError(f"{what}: does not fit timm's {net.__class__.__name__}: missing {missing[:4]}, unexpected {unexpected[:4]}")
