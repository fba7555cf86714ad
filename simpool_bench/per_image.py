"""Per-image records of a run: one row per record of the dataset, in record order.

Tasks keep their per-image data in a ``PerImageAccumulator`` beside the metric accumulators, so
the engine stores it with every finished shard and merges it over resumed shards and ranks like
the sums: ``merge`` concatenates rows, ``sync`` gathers every rank's rows, ``compute`` sorts them
by dataset index (each index must come once). ``base_frame`` lays the rows out over the records:
an image absent from the rows did not decode (``failed``); its task columns are missing values.

Columns every task has: ``index`` (position in the records), ``id``, ``path``, ``split``,
``failed``, ``nonfinite``; the task adds its own (see ``tasks``), and any task may add more as
``outcome.extras["per_image_columns"]`` ({name: array of len(records)}, record order).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from .data.inputs import clip
from .errors import SimpoolBenchError
from .metrics.base import Accumulator

if TYPE_CHECKING:
    from .data.records import Record

#: The run files of the per-image records (``finish_run``).
PER_IMAGE_PARQUET = "per_image.parquet"
PER_IMAGE_CSV = "per_image.csv"
#: The columns every per-image table starts with.
BASE_COLUMNS = ("index", "id", "path", "split", "failed", "nonfinite")
#: The key of ``Outcome.extras`` holding extra per-image columns ({name: array of len(records)}).
EXTRA_COLUMNS_KEY = "per_image_columns"


class PerImageAccumulator(Accumulator):
    """Rows keyed by dataset index: ``update(index, **columns)`` appends; ``merge`` concatenates,
    ``sync`` gathers over the ranks (exact: nothing is summed), ``compute`` returns the columns
    sorted by index. Every column holds one fixed-shape numpy-compatible value per row.

    Args:
        columns: the column names (besides ``index``) every update gives.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__()
        self.columns = ("index", *columns)
        self._parts: dict[str, list[torch.Tensor]] = {c: [] for c in self.columns}

    def reset(self) -> None:
        self._parts = {c: [] for c in self.columns}

    def update(self, index: Any, **values: Any) -> None:
        """Append rows: dataset indices (B,) and, for each column, (B, ...) values."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64)).reshape(-1)
        if set(values) != set(self.columns[1:]):
            raise ValueError(f"per-image columns {sorted(values)}, expected {sorted(self.columns[1:])}")
        if idx.numel() == 0:
            return
        self._parts["index"].append(idx.clone())
        for name, v in values.items():
            t = torch.as_tensor(np.ascontiguousarray(np.asarray(v))).clone()
            if t.shape[:1] != idx.shape:
                raise ValueError(f"per-image column {name!r}: {tuple(t.shape)} rows for {idx.numel()} indices")
            self._parts[name].append(t)

    def _cat(self, name: str) -> torch.Tensor:
        parts = self._parts[name]
        if not parts:
            return torch.zeros(0, dtype=torch.int64)
        if len(parts) > 1:
            try:
                self._parts[name] = [torch.cat(parts)]
            except RuntimeError as err:
                raise SimpoolBenchError(f"per-image column {name!r}: rows of different shapes ({err})") from None
        return self._parts[name][0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {c: self._cat(c).clone() for c in self.columns}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.columns):
            raise KeyError(f"per-image state: columns {sorted(state)}, expected {sorted(self.columns)}")
        empty = state["index"].numel() == 0
        self._parts = {c: [] if empty else [state[c].clone()] for c in self.columns}

    def merge(self, other: Accumulator) -> PerImageAccumulator:
        if not isinstance(other, PerImageAccumulator) or other.columns != self.columns:
            raise TypeError(f"cannot merge {type(other).__name__} into PerImageAccumulator{self.columns}")
        for c in self.columns:
            self._parts[c].extend(other._parts[c])
        return self

    def sync(self, group: Any = None) -> None:
        """Every rank ends with the rows of all ranks (objects gathered: works with gloo and nccl)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        mine = {c: self._cat(c).numpy() for c in self.columns}
        everyone: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(everyone, mine, group=group)
        self.reset()
        for part in everyone:
            if len(part["index"]):
                for c in self.columns:
                    self._parts[c].append(torch.from_numpy(np.asarray(part[c])))

    def compute(self) -> dict[str, np.ndarray]:
        """Columns as numpy arrays sorted by dataset index (an index seen twice is an error)."""
        index = self._cat("index").numpy()
        order = np.argsort(index, kind="stable")
        if len(index) and (np.diff(index[order]) == 0).any():
            raise SimpoolBenchError("per-image records: an image was counted twice")
        return {c: self._cat(c).numpy()[order] for c in self.columns}


# ------------------------------------------------------------------------------------ the table
def base_frame(records: Sequence[Record], split: str, index: np.ndarray, nonfinite: np.ndarray) -> pd.DataFrame:
    """The columns every task has, one row per record; rows present where ``index`` names them."""
    n = len(records)
    present = np.zeros(n, dtype=bool)
    present[index] = True
    nf = np.zeros(n, dtype=bool)
    nf[index] = np.asarray(nonfinite, dtype=bool)
    return pd.DataFrame(
        {
            "index": np.arange(n, dtype=np.int64),
            "id": [r.image_id for r in records],
            "path": [str(r.path) for r in records],
            "split": [split] * n,
            "failed": ~present,
            "nonfinite": nf,
        }
    )


def scatter(n: int, index: np.ndarray, values: Any, dtype: str) -> pd.Series:
    """``values`` of rows ``index`` spread over ``n`` records as a nullable column (missing elsewhere)."""
    out = pd.Series(pd.array([None] * n, dtype=dtype))
    if len(index):
        out.iloc[np.asarray(index)] = pd.array(np.asarray(values), dtype=dtype)
    return out


def scatter_lists(n: int, index: np.ndarray, values: Sequence[Any]) -> list[Any]:
    """Per-row lists (e.g. boxes) spread over ``n`` records, None where absent."""
    out: list[Any] = [None] * n
    for i, v in zip(np.asarray(index).tolist(), values):
        out[i] = None if v is None else np.asarray(v).tolist()
    return out


def box_lists(boxes: Sequence[Any]) -> list[list[list[int]]]:
    """Each record's (K, 4) boxes as a list of [x0, y0, x1, y1] ints."""
    return [np.asarray(b).reshape(-1, 4).astype(np.int64).tolist() for b in boxes]


def with_extra_columns(frame: pd.DataFrame | None, extras: dict[str, Any]) -> pd.DataFrame | None:
    """``frame`` with the task's extra columns (``extras[EXTRA_COLUMNS_KEY]``) appended."""
    cols = extras.get(EXTRA_COLUMNS_KEY) or {}
    if frame is None or not cols:
        return frame
    frame = frame.copy()
    for name, values in cols.items():
        if name in frame.columns:
            raise SimpoolBenchError(f"per-image column {name!r} is given twice")
        if len(values) != len(frame):
            raise SimpoolBenchError(f"per-image column {name!r}: {len(values)} values for {len(frame)} records")
        arr = np.asarray(values)
        frame[name] = [np.asarray(v).tolist() for v in values] if arr.ndim > 1 else values
    return frame


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with list cells (boxes, top-5) as JSON."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object and any(isinstance(v, (list, tuple, np.ndarray)) for v in out[c]):
            out[c] = [None if v is None else json.dumps(np.asarray(v).tolist()) for v in out[c]]
    return out.to_csv(index=False).encode("utf-8")


# ------------------------------------------------------------------------------------ packed hits
def pack_hits(hits: np.ndarray) -> np.ndarray:
    """(B, ...) bools -> (B, ceil(prod(...) / 8)) uint8, row-major bits (``np.packbits``)."""
    h = np.asarray(hits, dtype=bool)
    return np.packbits(h.reshape(h.shape[0], -1), axis=1)


def packed_bit(packed: np.ndarray, position: int) -> np.ndarray:
    """Bit ``position`` of every row of ``pack_hits``' output, as (B,) bools."""
    return (np.asarray(packed)[:, position // 8] >> (7 - position % 8)) & 1 == 1


# ------------------------------------------------------------------------------------ reading
def read_per_image(path: str | Path) -> tuple[pd.DataFrame, Path]:
    """A run's per-image records: ``path`` is a run folder or its per_image.parquet/.csv. Returns
    the table and the run folder."""
    p = Path(path)
    if p.is_dir():
        found = [p / f for f in (PER_IMAGE_PARQUET, PER_IMAGE_CSV) if (p / f).is_file()]
        if not found:
            raise SimpoolBenchError(f"--per-image {p}: no {PER_IMAGE_PARQUET} in this folder (a run of this version writes one)")
        p = found[0]
    if not p.is_file():
        raise SimpoolBenchError(f"--per-image {p}: no such file or folder")
    from .results import verify_run_file

    verify_run_file(p)  # a half-written folder's, another write's or an edited table is never ranked by
    try:
        # ids as written ("000005" stays a string, "NA" an id); an empty cell is a missing value
        frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, dtype={"id": str}, keep_default_na=False, na_values=[""])
    except Exception as err:  # noqa: BLE001 - any unreadable file is one clear line
        raise SimpoolBenchError(f"--per-image {p}: not a readable per-image table ({str(err).splitlines()[0][:120]})") from None
    missing = [c for c in ("id", "iou") if c not in frame.columns]
    if missing:
        raise SimpoolBenchError(f"--per-image {p}: no column {missing[0]!r} (expected a localize or discover run's per_image table)")
    return frame, p.parent


def rank_ids(frame: pd.DataFrame, ids: Sequence[str], how: str, n: int, source: str = "--per-image") -> list[str]:
    """The ``n`` image ids of ``ids`` (the dataset's, in order) with the best (``how='best'``) or
    worst IoU in ``frame``; images without an IoU there (failed, non-finite) are left out; ties
    keep dataset order. An IoU cell that is text, not a number or empty, is an error naming its row."""
    if how not in ("best", "worst"):
        raise SimpoolBenchError(f"--select {how!r}: ranking by per-image records takes best or worst")
    known = set(ids)
    foreign = [str(x) for x in frame["id"] if str(x) not in known]
    if foreign:
        raise SimpoolBenchError(f"{source}: image {foreign[0]!r} is not in the dataset (records of another dataset or split?)")
    values = pd.to_numeric(frame["iou"], errors="coerce").astype("float64")
    text = frame["iou"].astype(str).str.strip()
    damaged = values.isna() & frame["iou"].notna() & (text != "") & (text.str.lower() != "nan")
    if damaged.any():  # an empty cell is a failed image; a word is damage, never an image to leave out
        row = int(np.flatnonzero(damaged.to_numpy())[0])
        raise SimpoolBenchError(
            f"{source}: row {row + 1} (image {str(frame['id'].iloc[row])!r}): iou {clip(text.iloc[row])!r} is not a number"
        )
    iou = dict(zip(frame["id"].astype(str), values))
    pos = {x: i for i, x in reversed(list(enumerate(ids)))}
    scored = [x for x in pos if x in iou and np.isfinite(iou[x])]
    if not scored:
        raise SimpoolBenchError(f"{source}: no image has an IoU to rank by")
    sign = -1.0 if how == "best" else 1.0
    return sorted(scored, key=lambda x: (sign * iou[x], pos[x]))[:n]
