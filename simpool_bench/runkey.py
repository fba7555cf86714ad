"""The resume key: one hash of everything a run's numbers depend on, derived in this one place.

``resume_key`` is what finished shards (``engine.ShardStore``) and map stores (``maps``) are keyed
by; a shard whose key differs from the run's is recomputed, never merged. The key covers:

- the command (``kind``: classify, localize, discover, extract) and its protocol parameters
  (interval, mass, method, k-NN settings, ...) as the caller passes them;
- the model: every tensor of its ``state_dict`` (bytes, dtype, shape) and its settings (the plain
  attributes of the model object: arch, pool, gamma, min_scope, attention source, data config, ...);
- the data: every record (image id, path, label, size, boxes) as read from the list, metadata and
  annotation files, so an edited box or label changes the key, plus each image file's size and
  modification time (``st_size``, ``st_mtime_ns``): a replaced image changes the key without
  reading any pixels;
- the transform (its ``repr``, which names every step and its parameters);
- the run settings that change numbers: ``--amp``, ``--shard-size``, the device type and, on
  CUDA, PyTorch's float32 settings (TF32 matrix products and convolutions, cuDNN's benchmark and
  deterministic modes), which a caller of the API may set (timm's ``validate.py`` turns TF32 on);
- the code: the sha256 of the source files that compute numbers (``CODE_FILES``) and the torch
  and timm versions, so a fix in a metric never merges with shards counted before it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Source files (relative to the package) whose code decides a number.
CODE_FILES: tuple[str, ...] = (
    "metrics",
    "data/images.py",
    "data/decode.py",
    "discovery.py",
    "engine",
    "tasks",
    "finite.py",
    "map_store.py",
    "extraction.py",
    "map_sources.py",
    "models",
    "pooling.py",
    "transforms.py",
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def code_version() -> str:
    """sha256 of the number-deciding source files (``CODE_FILES``) and the torch/timm versions."""
    import timm

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(f"torch {torch.__version__} timm {timm.__version__}".encode())
    for name in CODE_FILES:
        target = root / name
        for f in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            if f.is_file():
                h.update(f.relative_to(root).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module | None) -> str:
    """sha256 of a model's tensors (name, dtype, shape, bytes) and the plain settings of the model
    and of every submodule (e.g. timm's per-block ``fused_attn``, a norm's ``eps``)."""
    if model is None:
        return "none"
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    for prefix, module in sorted(model.named_modules(), key=lambda item: item[0]):
        settings = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training" and _plain(v)}
        if settings or not prefix:
            h.update(f"{prefix}: {sorted(settings.items())!r}\n".encode())
    return h.hexdigest()


def _plain(v: Any) -> bool:
    if isinstance(v, (str, int, float, bool, type(None))):
        return True
    if isinstance(v, (tuple, list)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_plain(k) and _plain(x) for k, x in v.items())
    return False


def data_fingerprint(records: Iterable[Any]) -> str:
    """sha256 of every record's fields (boxes as bytes) and its image file's size and mtime.

    Per record, in field order: ``name=repr(value)`` lines, for an array a ``name dtype shape``
    line and its bytes, then ``file <st_size> <st_mtime_ns>`` (or ``file missing``). The lines of
    many records go to the hash in one piece (the same digest as one update per line; about 2x
    faster over ImageNet's 50,000 or 1.28M records, ``benchmarks/resume_key.py``)."""
    h = hashlib.sha256()
    names: dict[type, tuple[str, ...]] = {}
    dtypes: dict[Any, str] = {}
    chunk: list[bytes] = []
    for r in records:
        cls = type(r)
        fields = names.get(cls)
        if fields is None:
            fields = names[cls] = tuple(f.name for f in dataclasses.fields(r))
        text = []
        for name in fields:
            v = getattr(r, name)
            if isinstance(v, np.ndarray):
                dt = dtypes.get(v.dtype)
                if dt is None:
                    dt = dtypes[v.dtype] = str(v.dtype)
                text.append(f"{name} {dt} {v.shape}\n")
                chunk.append("".join(text).encode())
                chunk.append(np.ascontiguousarray(v).tobytes())
                text = []
            else:
                text.append(f"{name}={v!r}\n")
        try:
            st = os.stat(r.path)
            text.append(f"file {st.st_size} {st.st_mtime_ns}\n")
        except OSError:
            text.append("file missing\n")
        chunk.append("".join(text).encode())
        if len(chunk) >= 8192:
            h.update(b"".join(chunk))
            chunk = []
    h.update(b"".join(chunk))
    return h.hexdigest()


def describe_function(fn: types.FunctionType) -> str:
    """A Python function by name and code: ``module.qualname#digest`` of its bytecode, constants,
    names, defaults and closure values (object addresses left out), so an edited lambda or function
    body gives another description and the same source gives the same one in every process."""
    code = fn.__code__
    closure = [cell.cell_contents for cell in fn.__closure__ or ()]
    parts = repr((code.co_consts, code.co_names, fn.__defaults__, fn.__kwdefaults__, closure))
    digest = hashlib.sha256(code.co_code + _ADDRESS.sub("", parts).encode()).hexdigest()[:16]
    return f"{fn.__module__}.{fn.__qualname__}#{digest}"


def describe_transform(transform: Callable | None) -> str:
    """A stable description of a transform: its ``repr`` (object addresses replaced by the object's
    attributes for classes without their own ``repr``); a function, or a function held by a step
    (torchvision's ``Lambda``), by ``describe_function``."""
    if transform is None:
        return "none"
    if isinstance(transform, types.FunctionType):
        return describe_function(transform)
    steps = getattr(transform, "transforms", None)
    if isinstance(steps, (list, tuple)):
        return f"{type(transform).__name__}[" + ", ".join(describe_transform(t) for t in steps) + "]"
    text = repr(transform)
    attrs = {k: v for k, v in vars(transform).items() if not k.startswith("_")} if hasattr(transform, "__dict__") else {}
    if _ADDRESS.search(text):
        text = f"{type(transform).__module__}.{type(transform).__qualname__}({attrs!r})"
        text = _ADDRESS.sub("", text)
    functions = [f"{k}={describe_function(v)}" for k, v in sorted(attrs.items()) if isinstance(v, types.FunctionType)]
    return text + ("{" + ", ".join(functions) + "}" if functions else "")


def float32_settings(device: str) -> str:
    """PyTorch's settings that change float32 results on ``device``: on CUDA, TF32 for matrix
    products and for cuDNN convolutions, cuDNN's benchmark and deterministic modes; '' elsewhere."""
    if not str(device).startswith("cuda"):
        return ""
    cudnn = torch.backends.cudnn
    return (
        f"matmul_tf32={torch.backends.cuda.matmul.allow_tf32} cudnn_tf32={cudnn.allow_tf32} "
        f"benchmark={cudnn.benchmark} deterministic={cudnn.deterministic}"
    )


def resume_key(
    kind: str,
    model: torch.nn.Module | None,
    records: Iterable[Any],
    transform: Callable | None,
    params: Mapping[str, Any],
    *,
    amp: str = "off",
    shard_size: int = 0,
    device: str = "cpu",
) -> str:
    """The key of a run (see the module docstring): 24 hex digits of a sha256."""
    parts = {
        "kind": kind,
        "params": sorted((str(k), repr(v)) for k, v in params.items()),
        "model": model_fingerprint(model),
        "data": data_fingerprint(records),
        "transform": describe_transform(transform),
        "amp": amp,
        "shard_size": int(shard_size),
        "device": str(device),
        "float32": float32_settings(device),
        "code": code_version(),
    }
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:24]
