"""A minimal torchmetrics-style accumulator: declared sum states, update/compute/reset/merge.

Every metric of this package keeps only integer (or float) *sums* as state, so that merging two
accumulators (``merge``) or reducing them across ranks (``sync``) is exact.
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from ..errors import SimpoolBenchError
from .catalog import MetricSpec


def image_count(n: Any) -> int:
    """``n`` of ``add_misses``: a whole number >= 0 (-1 took an image off the count, 2.7 counted 2)."""
    try:
        count = operator.index(n)  # ints, numpy ints, an integer 0-d tensor
    except TypeError:
        count = -1
    if isinstance(n, bool) or count < 0:
        raise SimpoolBenchError(f"add_misses: n = {n!r}: expected a whole number of images >= 0")
    return count


def check_box_sequence(gt_boxes: Any, per: str) -> None:
    """``gt_boxes`` of ``update``: a sequence (list, tuple, array) of (K, 4) box arrays, one ``per``
    map or box; None, a generator, a str or a dict is one error, not a TypeError from ``len``."""
    scalar = getattr(gt_boxes, "ndim", None) == 0  # a 0-d tensor or array: a TypeError from len()
    if not hasattr(gt_boxes, "__len__") or not hasattr(gt_boxes, "__getitem__") or isinstance(gt_boxes, (str, bytes, dict)) or scalar:
        kind = f"{type(gt_boxes).__module__}.{type(gt_boxes).__qualname__}" + (" of 0 dimensions" if scalar else "")
        raise SimpoolBenchError(f"gt_boxes: expected a sequence of (K, 4) box arrays, one per {per}, got {kind}")


class Accumulator:
    """Base class: subclasses declare their states with ``add_state`` and implement
    ``update`` and ``compute``. States are tensors reduced by summation. ``METRICS`` names the
    results-table metrics the accumulator reports (``metrics.catalog``): which way is better, the
    default ``check`` tolerance."""

    METRICS: ClassVar[tuple[MetricSpec, ...]] = ()

    def __init__(self) -> None:
        self._defaults: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Declare a summed state ``name`` with its initial value."""
        self._defaults[name] = default.detach().clone()
        setattr(self, name, default.detach().clone())

    def reset(self) -> None:
        """Return every state to its default."""
        for name, default in self._defaults.items():
            setattr(self, name, default.clone())

    def merge(self, other: Accumulator) -> Accumulator:
        """Add the states of ``other`` (same type and configuration) into ``self``."""
        if type(other) is not type(self) or other._defaults.keys() != self._defaults.keys():
            raise SimpoolBenchError(
                f"cannot merge {type(other).__name__} into {type(self).__name__}: expected another {type(self).__name__}"
            )
        for name in self._defaults:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine.shape != theirs.shape:
                raise ValueError(f"state {name!r} shapes differ: {tuple(mine.shape)} vs {tuple(theirs.shape)}")
            setattr(self, name, mine + theirs.to(mine.device))
        return self

    def sync(self, group: Any = None) -> None:
        """Sum every state over the ranks of ``group`` (no-op outside torch.distributed)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        backend = dist.get_backend(group)
        for name in self._defaults:
            value = getattr(self, name)
            work = value.to("cuda") if backend == "nccl" else value.cpu()
            work = work.clone()
            dist.all_reduce(work, op=dist.ReduceOp.SUM, group=group)
            setattr(self, name, work.to(value.device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """States as CPU tensors, e.g. to store with a finished shard."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self._defaults}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore states saved by ``state_dict``."""
        for name in self._defaults:
            if name not in state:
                raise SimpoolBenchError(
                    f"{type(self).__name__}.load_state_dict: state {name!r} missing (expected the dict of state_dict())"
                )
            setattr(self, name, state[name].clone())

    def warm_up(self) -> None:
        """Load or compile whatever the first ``update`` needs. The engine calls it once per run,
        in a thread started after the decoding workers, so that this cost overlaps with decoding
        and the first forward passes, and waits for it before the first ``update``. The default
        does nothing."""

    def update(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract; may return per-sample values
        raise NotImplementedError

    def compute(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError
