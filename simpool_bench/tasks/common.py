"""What every task shares: the outcome of a run, a tidy row, the empty-dataset check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import SimpoolBenchError
from ..registry import NAMED_FAILURES

if TYPE_CHECKING:
    import pandas as pd

    from ..data.records import Record
    from ..engine import EngineConfig, EvalResult


@dataclass
class Outcome:
    """Rows of the tidy table, images counted, the per-image records and anything else worth keeping."""

    rows: list[dict[str, Any]]
    n_images: int
    n_failed: int
    extras: dict[str, Any] = field(default_factory=dict)
    n_nonfinite: int = 0
    per_image: pd.DataFrame | None = None
    """One row per record, in record order (``per_image``): what each image scored."""


def row(dataset: str, split: str, metric: str, value: float, iou: int | None = None, k: int | None = None) -> dict[str, Any]:
    """One row of the tidy table (``k``: the k of a k-NN row)."""
    return {"dataset": dataset, "split": split, "metric": metric, "iou_threshold": iou, "k": k, "value": float(value)}


def require(records: Sequence[Record], what: str) -> None:
    """An empty dataset is a user error."""
    if len(records) == 0:
        raise SimpoolBenchError(f"the {what} dataset is empty: no image was found")


def require_evaluated(n_images: int, n_failed: int, why: str) -> None:
    """A run in which no image decoded (``n_images`` 0, ``n_failed`` > 0) has nothing to score: one
    error saying so and ``why`` they failed, not a table of NaN (classify, discover) or an
    accumulator's "no image was accumulated" (localize)."""
    if n_images == 0 and n_failed > 0:
        raise SimpoolBenchError(f"none of the {n_failed:,} images could be evaluated: {why}; nothing to score")


def decode_failures(config: EngineConfig) -> str:
    """Why the images of a model run failed, for ``require_evaluated``."""
    return f"every one failed to decode or was over --max-pixels {config.max_pixels:,} (warnings name up to {NAMED_FAILURES} of them)"


#: Where a scoring run (classify, localize, discover) lists every image that failed, for the engine's
#: line counting the failures it does not name (``evaluate(failures_listed=...)``).
PER_IMAGE_FAILURES = "the per-image table (per_image.parquet under --out) marks every one in its `failed` column"

#: Why the images of a map store failed, for ``require_evaluated``.
STORED_FAILURES = f"every one failed to decode when extract stored the maps (its warnings named up to {NAMED_FAILURES} of them)"


def engine_extras(res: EvalResult) -> dict[str, Any]:
    """The engine's shard counts and its loop's time (``loop_s``; of it ``data_wait_s`` waiting for
    decoded images, ``step_s`` in the metric steps and ``warm_up_s`` waiting for the metrics' kernels,
    which load in a thread while the first images decode), kept in the outcome's extras."""
    return {
        "shards_total": res.shards_total,
        "shards_resumed": res.shards_resumed,
        "loop_s": res.extras.get("loop_s"),
        "data_wait_s": res.extras.get("data_wait_s"),
        "step_s": res.extras.get("step_s"),
        "warm_up_s": res.extras.get("warm_up_s"),
    }


def no_resume(config: EngineConfig) -> EngineConfig:
    """``config`` without resume (auxiliary passes: memory bank, figures)."""
    return replace(config, resume_dir=None)
