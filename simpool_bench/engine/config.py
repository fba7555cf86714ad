"""How to run a model over a dataset: ``EngineConfig``, the device and the autocast context."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.inputs import DEFAULT_MAX_PIXELS
from ..errors import SimpoolBenchError
from ..fields import check_fields
from .distributed import dist_world

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class EngineConfig:
    """How to run a model over a dataset.

    Args:
        device: 'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N', 'mps'.
        batch_size: images per forward pass.
        workers: DataLoader worker processes (0 = decode in the main process).
        amp: 'off', 'bf16' or 'fp16' autocast.
        channels_last: use channels_last memory format (helps CNNs on GPUs).
        compile: wrap the model with torch.compile.
        shard_size: images per shard (the unit of resume and of distributed work).
        resume_dir: where finished shards are stored; None disables resume.
        progress: show a rich progress bar (rank 0 only).
        strict: fail on an image that does not decode instead of skipping it.
        max_pixels: images whose header gives more pixels are not decoded (skipped and counted,
            or an error under ``strict``); ``None``: PIL's own limit.
        allow_nonfinite: count images with non-finite outputs as misses instead of failing the run
            (the evaluations check it; see ``finite``).
        normalize_on_device: where the dataset's transform allows it (PIL steps, ToTensor,
            Normalize: ``data.normalize``), workers hand over uint8 images and the device makes the
            same floats, bit for bit. None (default): on any device but the CPU, where the table
            lookup in the main process costs more than it saves (0.6 ms an image on 2 cores).
    """

    device: str = "auto"
    batch_size: int = 64
    workers: int = 0
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    shard_size: int = 1024
    resume_dir: Path | None = None
    progress: bool = True
    strict: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    allow_nonfinite: bool = False
    normalize_on_device: bool | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        for name, least in (("batch_size", 1), ("workers", 0), ("shard_size", 1), ("max_pixels", 1)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise SimpoolBenchError(
                    f"EngineConfig.{name} = {value}: expected an integer >= {least}" + (" or None" if name == "max_pixels" else "")
                )
        if self.amp not in AMP_DTYPES:
            raise SimpoolBenchError(f"EngineConfig.amp = {self.amp!r}: expected one of {', '.join(AMP_DTYPES)}")


def resolve_device(name: str) -> torch.device:
    """Turn a ``--device`` value into a torch.device, with a clear error when it is not there."""
    name = "auto" if name is None else name.lower()  # "" is a mistake (an unset variable), not auto
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{local % torch.cuda.device_count()}")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise SimpoolBenchError(f"--device {name!r} is not a device name (expected auto, cpu, cuda, cuda:N, mps)") from err
    if dev.type not in ("cpu", "cuda", "mps"):  # meta, xla, xpu...: torch names them, the runs cannot use them
        raise SimpoolBenchError(f"--device {name!r}: not a device the runs use (expected auto, cpu, cuda, cuda:N, mps)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SimpoolBenchError(f"--device {name} was asked for but no CUDA GPU is available here; use --device cpu")
        if dev.index is None and dist_world() > 1:
            dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SimpoolBenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SimpoolBenchError(f"--device {name} was asked for but MPS is not available here; use --device cpu")
    return dev


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``--amp`` (a null context when off)."""
    if amp not in AMP_DTYPES:
        raise SimpoolBenchError(f"--amp {amp!r} is not one of {', '.join(AMP_DTYPES)}")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
