"""Non-finite numbers (NaN, +-inf): in a checkpoint's weights and in a run's outputs.

One NaN in a weight turns every map and logit it touches into NaN; the protocols would then count
garbage (a NaN map min-max normalises to nothing, NaN logits give an arbitrary argmax). So a run
counts the images whose outputs are not all finite (``NonFiniteCounter``, a sum: it survives resume
and merges across ranks) and fails with one line saying how many, unless ``--allow-nonfinite``:
then each such image counts as a miss (in the denominator, never a hit) and the table gets an
``n_nonfinite`` row.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .errors import SimpoolBenchError
from .metrics.base import Accumulator
from .metrics.catalog import NONFINITE_METRICS

#: The metric row that counts images with non-finite outputs (written only when there are some).
NONFINITE_METRIC = NONFINITE_METRICS[0].name
ALLOW_FLAG = "--allow-nonfinite"


def nonfinite_tensors(state_dict: Mapping[str, torch.Tensor]) -> list[tuple[str, int]]:
    """(name, count of NaN/inf values) of every floating-point tensor that holds any."""
    out = []
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            n = int((~torch.isfinite(t)).sum())
            if n:
                out.append((name, n))
    return out


def describe_nonfinite(found: list[tuple[str, int]], limit: int = 5) -> str:
    """'none', or e.g. '3 values in 2 tensors: pool.wq.weight (2), head.bias (1)'."""
    if not found:
        return "none"
    names = ", ".join(f"{n} ({c})" for n, c in found[:limit]) + (f", ... ({len(found) - limit} more)" if len(found) > limit else "")
    return f"{sum(c for _, c in found)} values in {len(found)} tensors: {names}"


def finite_rows(*tensors: torch.Tensor | np.ndarray | None) -> np.ndarray:
    """(B,) bools: row ``i`` of every given (B, ...) tensor is all finite (None entries ignored)."""
    ok: np.ndarray | None = None
    for t in tensors:
        if t is None:
            continue
        t = torch.as_tensor(t)
        row = torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1).cpu().numpy() if t.shape[0] else np.zeros(0, bool)
        ok = row if ok is None else ok & row
    if ok is None:
        raise ValueError("finite_rows: no tensor given")
    return ok


class NonFiniteCounter(Accumulator):
    """Counts images whose outputs (logits, maps, keys, features) are not all finite."""

    METRICS = NONFINITE_METRICS
    count: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, n: int) -> None:
        self.count = self.count + int(n)

    def compute(self) -> int:
        return int(self.count)


def check_nonfinite(n: int, total: int, what: str, allow: bool) -> None:
    """Fail with one line when ``n`` of ``total`` images gave non-finite ``what`` (unless ``allow``)."""
    if n and not allow:
        raise SimpoolBenchError(
            f"{n} of {total} images gave non-finite {what} (NaN or inf): the weights may hold NaN "
            f"(see `simpool-bench inspect`); {ALLOW_FLAG} counts them as misses and reports {NONFINITE_METRIC}"
        )
