"""The API behind ``visualize``: which images to show, the box each model predicts on them, and
the pictures (the SimPool paper's attention figures, and BoxAcc-vs-threshold curves).

Predicted boxes follow the protocol that scores them:
- localize (cub, imagenet; wsolevaluation ``evaluation.py``): the score map is resized to 224x224,
  min-max normalised and quantised (``metrics.boxacc.prepare_scoremap``); at threshold t the binary
  map ``u8 > int(t * max(u8))`` gives one box per contour (``findContours(RETR_TREE)``,
  ``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` of ``boundingRect``, none -> (0, 0, 0, 0)); the
  box shown is the one with the best IoU against the GT boxes (+1 convention), as MaxBoxAccV2
  scores an image. Without GT boxes, the largest contour's box.
- discover (voc07, voc12, coco20k; LOST): ``discovery.boxes_from_attention`` (60% of the attention
  mass, largest 4-connected component), its IoU as LOST's CorLoc computes it.
Images are selected deterministically: ``--ids`` in the given order, the first N, or the best/worst
N by the first column's IoU (stable: ties keep dataset order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .data.images import load_rgb
from .data.records import Record
from .discovery import DINO_ATTENTION_MASS
from .engine import EngineConfig
from .errors import SimpoolBenchError
from .files import atomic_write
from .metrics.corloc import lost_iou_pairs
from .plotting import boxacc_curves, overlay_grid
from .tasks.discovery import map_boxes
from .tasks.wsol import best_wsol_box, wsol_gt_boxes
from .transforms import WSOL_IMAGE_SIZE

if TYPE_CHECKING:
    from .figures import LostPatches
    from .models.base import BenchModel

OVERLAYS_PNG = "overlays.png"
#: The paper figure: OUT/figure.png|pdf|svg (``figures.paper_figure``).
FIGURE_STEM = "figure"
SELECTION_CSV = "selection.csv"
CURVES_PNG = "boxacc_curves.png"
#: What ``localize --out`` writes (``run_records.curve_csv``) and ``plot_curves`` reads.
CURVE_CSV = "boxacc_curve.csv"
SELECT_MODES = ("first", "best", "worst")
#: The row of a localize run whose threshold ``read_best_threshold`` takes by default.
BEST_THRESHOLD_IOU = 50


# ------------------------------------------------------------------------------------ boxes
def discovery_box(
    scoremap: np.ndarray,
    image_hw: tuple[int, int],
    gt_boxes: np.ndarray,
    stride: int,
    mass: float = DINO_ATTENTION_MASS,
    lost_compat: bool = False,
) -> tuple[np.ndarray, float]:
    """LOST-protocol box of one attention map (padded grid) and its best IoU (LOST ``bbox_iou``)
    against ``gt_boxes``; NaN without GT boxes."""
    attn = torch.from_numpy(np.ascontiguousarray(scoremap, dtype=np.float32))[None]
    box = map_boxes(attn, np.asarray([image_hw]), stride, mass=mass, lost_compat=lost_compat)[0]
    gt = np.asarray(gt_boxes).reshape(-1, 4).astype(np.int64)
    if len(gt) == 0:
        return box, float("nan")
    return box, float(lost_iou_pairs(np.repeat(box[None], len(gt), axis=0), gt).max())


# ------------------------------------------------------------------------------------ selection
def select_indices(scores: dict[int, float], how: str, n: int) -> list[int]:
    """``n`` dataset indices from ``scores`` (index -> IoU): the first ones, or the best/worst by
    score; ties (and 'first') keep ascending index order. Images without an IoU (NaN: no GT box,
    e.g. a COCO image of crowd annotations only) are left out of best/worst."""
    if how not in SELECT_MODES:
        raise SimpoolBenchError(f"--select {how!r}: expected one of {', '.join(SELECT_MODES)}")
    order = sorted(scores)
    if how == "first":
        return order[:n]
    order = [i for i in order if not np.isnan(scores[i])]
    if not order:
        raise SimpoolBenchError(
            f"--select {how} ranks images by IoU, but the dataset has no ground-truth boxes; use --select first or --ids"
        )
    sign = -1.0 if how == "best" else 1.0
    return sorted(order, key=lambda i: (sign * scores[i], i))[:n]


# ------------------------------------------------------------------------------------ map sources
@dataclass
class MapSource:
    """One column of the figure: a label and a way to get raw maps (float32, the model's grid) of
    dataset indices (images that do not decode are left out of the returned dict)."""

    label: str
    fetch: Callable[[Sequence[int]], dict[int, np.ndarray]]
    stride: int
    lost: dict[int, tuple[np.ndarray, LostPatches]] | None = None


def model_source(
    model: BenchModel, records: Sequence[Record], config: EngineConfig, *, protocol: str, cam_target: str = "gt", label: str | None = None
) -> MapSource:
    """Maps computed by ``model`` as ``protocol`` feeds images (``extraction.compute_maps``)."""
    from .extraction import MapBatch, compute_maps

    def fetch(indices: Sequence[int]) -> dict[int, np.ndarray]:
        got: dict[int, np.ndarray] = {}

        def keep(b: MapBatch) -> None:
            for j, i in enumerate(b.indices.tolist()):
                if b.ok[j]:
                    got[i] = b.maps[j].copy()

        if len(indices):
            compute_maps(
                model,
                records,
                config,
                keep,
                protocol=protocol,
                indices=list(indices),
                cam_target=cam_target,
                description=f"maps {label or ''}".strip(),
            )
        return got

    return MapSource(str(label or getattr(model, "arch", "model")), fetch, int(getattr(model, "stride", 0)))


def lost_source(
    model: BenchModel, records: Sequence[Record], config: EngineConfig, *, k_patches: int = 100, label: str | None = None
) -> MapSource:
    """LOST on a ViT's last-block keys (discover protocol): per image its box (``discovery.boxes_lost``),
    its seed and expanded patches, and as the map LOST's expansion score (the sum of the expanded
    patches' similarity rows, whose positive component around the seed is the box)."""
    from .data.images import ImageDataset
    from .discovery import boxes_lost, lost_degree_order
    from .engine import Batch, bucket_batches, evaluate
    from .extraction import map_transform
    from .figures import LostPatches
    from .transforms import padded_size

    if getattr(model, "family", "") != "vit":
        raise SimpoolBenchError(
            f"--method lost needs a ViT (last-block keys); {getattr(model, 'arch', '?')} is a {getattr(model, 'family', '?')}"
        )
    stride = int(model.stride)
    details: dict[int, tuple[np.ndarray, LostPatches]] = {}

    def fetch(indices: Sequence[int]) -> dict[int, np.ndarray]:
        order_idx = np.asarray(list(indices), dtype=np.int64)
        subset = [records[int(i)] for i in order_idx]
        sizes = np.array([[r.height, r.width] for r in subset], dtype=np.int64)
        got: dict[int, np.ndarray] = {}

        def step(batch: Batch, accs: dict) -> None:
            keep = np.flatnonzero(batch.ok)
            if keep.size == 0:
                return
            gh, gw = batch.images.shape[-2] // stride, batch.images.shape[-1] // stride
            keys = batch.output.keys.float().cpu()[keep]
            boxes = boxes_lost(keys, (gh, gw), sizes[batch.indices[keep]], stride, k_patches=k_patches)
            sim = keys @ keys.transpose(1, 2)
            order = lost_degree_order(sim)
            for j, local in enumerate(batch.indices[keep]):
                a, seed, pot = sim[j], int(order[j, 0]), order[j, :k_patches]
                similars = pot[a[seed, pot] > 0.0]
                i = int(order_idx[local])
                got[i] = a[similars, :].sum(dim=0).reshape(gh, gw).numpy()
                details[i] = (boxes[j], LostPatches(seed, similars.numpy(), gw, stride))

        pad_keys = [(padded_size(int(h), stride), padded_size(int(w), stride)) for h, w in sizes]
        if len(subset):
            evaluate(
                model,
                ImageDataset(subset, map_transform(model, "discover")),
                dict,
                step,
                replace(config, resume_dir=None),
                forward=lambda m, x, idx: m(x, return_keys=True),
                batches_for=lambda r: bucket_batches(r, pad_keys, config.batch_size),
                description=f"lost {label or ''}".strip(),
            )
        return got

    return MapSource(str(label or getattr(model, "arch", "model")), fetch, stride, lost=details)


def store_source(store, label: str | None = None) -> MapSource:
    """Maps read from a ``map_store.MapStore``."""
    return MapSource(label or store.root.name, store.read, int(store.manifest.get("stride", 0)))


# ------------------------------------------------------------------------------------ overlays
@dataclass
class OverlayResult:
    """The files ``render_overlays`` wrote and the table behind selection.csv."""

    png: Path
    selection: Path
    table: pd.DataFrame
    figure: Path | None = None


def _draw_box(box: np.ndarray, exclusive: bool) -> np.ndarray:
    """A box in overlay_grid's inclusive pixels (LOST boxes have an exclusive max)."""
    b = np.asarray(box, dtype=np.int64).reshape(4).copy()
    if exclusive:
        b[2], b[3] = max(b[0], b[2] - 1), max(b[1], b[3] - 1)
    return b


def _patch_map(scoremap: np.ndarray, stride: int, hw: tuple[int, int]) -> np.ndarray:
    """A padded-grid map shown on its image: each patch covers stride x stride pixels, cropped to the image."""
    up = np.repeat(np.repeat(np.asarray(scoremap, dtype=np.float32), stride, axis=0), stride, axis=1)
    return up[: hw[0], : hw[1]]


def render_overlays(
    sources: Sequence[MapSource],
    records: Sequence[Record],
    out: str | os.PathLike,
    *,
    protocol: str,
    ids: Sequence[str] | None = None,
    select: str = "first",
    n: int = 8,
    thresholds: Sequence[float] | None = None,
    mass: float = DINO_ATTENTION_MASS,
    lost_compat: bool = False,
    alpha: float = 0.5,
    figure_format: str | None = "png",
    dpi: int = 200,
    cmap: str = "inferno",
) -> OverlayResult:
    """Write ``out/overlays.png`` (a row per image: the image, then one overlay per source) and
    ``out/selection.csv`` (row, image_id, index, column, threshold, x0, y0, x1, y1, iou).

    Args:
        sources: the columns (``model_source``/``store_source``).
        protocol: 'localize' (images at 224x224, wsol boxes at ``thresholds``) or 'discover'
            (full resolution, LOST boxes with ``mass``/``lost_compat``).
        ids: image ids to show, in order; otherwise ``select`` ('first', 'best', 'worst') ``n``.
        thresholds: one score-map threshold per source (localize; default 0.5).
        figure_format: also write the paper figure ``out/figure.<format>`` (png, pdf, svg; None: not)
            at ``dpi`` in colour map ``cmap`` (``figures.paper_figure``).
    Images that do not decode are left out (an error when asked for by id).
    A LOST column (``lost_source``) shows LOST's box, seed and expanded patches.
    """
    thr = _check_overlay_args(sources, records, protocol, thresholds)
    localize = protocol == "localize"
    gts = wsol_gt_boxes(records) if localize else [np.asarray(r.boxes).reshape(-1, 4) for r in records]

    def predict(col: int, i: int, m: np.ndarray) -> tuple[np.ndarray, float]:
        lost = sources[col].lost
        if lost is not None:
            box = np.asarray(lost[i][0])
            gt = np.asarray(gts[i]).reshape(-1, 4).astype(np.int64)
            return box, (float(lost_iou_pairs(np.repeat(box[None], len(gt), axis=0), gt).max()) if len(gt) else float("nan"))
        if localize:
            return best_wsol_box(m, gts[i], thr[col])
        hw = (int(records[i].height), int(records[i].width))
        if min(hw) <= 0:
            w, h = load_rgb(records[i].path).size
            hw = (h, w)
        return discovery_box(m, hw, gts[i], sources[col].stride, mass=mass, lost_compat=lost_compat)

    chosen, columns = _choose(sources, records, ids, select, n, lambda i, m: predict(0, i, m)[1])
    drawn = _Drawn.of(sources, records, chosen, columns, gts, localize, predict, thr)
    out = Path(out)
    png = overlay_grid(
        drawn.images, drawn.maps, drawn.grid_gt(), drawn.grid_pred(), [s.label for s in sources], out / OVERLAYS_PNG, alpha=alpha
    )
    table = pd.DataFrame(drawn.rows)
    atomic_write(out / SELECTION_CSV, table.to_csv(index=False).encode())
    fig = None
    if figure_format is not None:
        from .figures import paper_figure

        lost_draw = [[s.lost[i][1] if s.lost is not None else None for i in chosen] for s in sources]
        fig = paper_figure(
            drawn.images,
            drawn.maps,
            drawn.gt,
            drawn.pred,
            drawn.ious,
            [records[i].image_id for i in chosen],
            [s.label for s in sources],
            out / f"{FIGURE_STEM}.{figure_format}",
            fmt=figure_format,
            dpi=dpi,
            cmap=cmap,
            lost=lost_draw if any(s.lost is not None for s in sources) else None,
            exclusive=drawn.exclusive,
        )
    return OverlayResult(png, out / SELECTION_CSV, table, fig)


def _check_overlay_args(
    sources: Sequence[MapSource], records: Sequence[Record], protocol: str, thresholds: Sequence[float] | None
) -> list[float]:
    """render_overlays' arguments checked; one threshold per source."""
    if not sources:
        raise SimpoolBenchError("visualize: no model or map store to draw")
    if protocol not in ("localize", "discover"):
        raise SimpoolBenchError(f"protocol {protocol!r}: expected localize or discover")
    if not records:
        raise SimpoolBenchError("visualize: the dataset is empty")
    thr = [0.5] * len(sources) if thresholds is None else [float(t) for t in thresholds]
    if len(thr) != len(sources):
        raise SimpoolBenchError(f"visualize: {len(thr)} thresholds for {len(sources)} columns")
    for t in thr:
        if not 0.0 <= t < 1.0:
            raise SimpoolBenchError(f"threshold {t}: expected a score-map threshold in [0, 1)")
    return thr


def _choose(
    sources: Sequence[MapSource],
    records: Sequence[Record],
    ids: Sequence[str] | None,
    select: str,
    n: int,
    score: Callable[[int, np.ndarray], float],
) -> tuple[list[int], list[dict[int, np.ndarray]]]:
    """The images shown (by id, or the first/best/worst ``n`` by the first column's ``score``) and
    every column's maps of them."""
    if ids:
        where: dict[str, int] = {}
        for i, rec in enumerate(records):
            where.setdefault(rec.image_id, i)
        missing = [x for x in ids if x not in where]
        if missing:
            raise SimpoolBenchError(
                f"--ids: image id {missing[0]!r} is not in the dataset ({len(records)} images, e.g. {records[0].image_id!r})"
            )
        chosen = [where[x] for x in ids]
        first = sources[0].fetch(chosen)
        bad = [records[i].image_id for i in chosen if i not in first]
        if bad:
            raise SimpoolBenchError(f"--ids: image {bad[0]!r} does not decode")
    else:
        if n < 1:
            raise SimpoolBenchError(f"--n {n}: expected at least 1")
        candidates = list(range(min(n, len(records)))) if select == "first" else list(range(len(records)))
        first = sources[0].fetch(candidates)
        chosen = select_indices({i: score(i, m) for i, m in first.items()}, select, n)
        if not chosen:
            raise SimpoolBenchError("visualize: none of the selected images decodes")
    columns: list[dict[int, np.ndarray]] = [{i: first[i] for i in chosen}]
    for s in sources[1:]:
        got = s.fetch(chosen)
        lost = [records[i].image_id for i in chosen if i not in got]
        if lost:
            raise SimpoolBenchError(f"column {s.label!r}: no map for image {lost[0]!r}")
        columns.append(got)
    return chosen, columns


@dataclass
class _Drawn:
    """What the overlay grid and the paper figure draw: images, per column maps, boxes as the
    protocol gives them (``exclusive``: LOST's, max exclusive; the grid draws them in inclusive
    pixels, ``grid_gt``/``grid_pred``) and IoUs, and selection rows."""

    images: list[np.ndarray]
    gt: list[np.ndarray]
    maps: list[list[np.ndarray]]
    pred: list[list[np.ndarray]]
    ious: list[list[float]]
    rows: list[dict]
    exclusive: bool

    def grid_gt(self) -> list[np.ndarray]:
        """The GT boxes of each image in overlay_grid's inclusive pixels."""
        return [np.stack([_draw_box(b, self.exclusive) for b in g]) if len(g) else np.zeros((0, 4)) for g in self.gt]

    def grid_pred(self) -> list[list[np.ndarray]]:
        """The predicted box of each column and image in overlay_grid's inclusive pixels."""
        return [[_draw_box(b, self.exclusive) for b in col] for col in self.pred]

    @classmethod
    def of(
        cls,
        sources: Sequence[MapSource],
        records: Sequence[Record],
        chosen: list[int],
        columns: list[dict[int, np.ndarray]],
        gts: Sequence[np.ndarray],
        localize: bool,
        predict: Callable[[int, int, np.ndarray], tuple[np.ndarray, float]],
        thr: list[float],
    ) -> _Drawn:
        d = cls([], [], [[] for _ in sources], [[] for _ in sources], [[] for _ in sources], [], exclusive=not localize)
        for r, i in enumerate(chosen):
            img = load_rgb(records[i].path)
            if localize:
                img = img.resize((WSOL_IMAGE_SIZE, WSOL_IMAGE_SIZE), Image.Resampling.BILINEAR)  # torchvision Resize((224, 224)) on PIL
            arr = np.asarray(img, dtype=np.uint8)
            d.images.append(arr)
            d.gt.append(np.asarray(gts[i]).reshape(-1, 4))
            for c, s in enumerate(sources):
                m = columns[c][i]
                box, iou = predict(c, i, m)
                d.maps[c].append(m if localize else _patch_map(m, s.stride, arr.shape[:2]))
                d.pred[c].append(np.asarray(box).reshape(4))
                d.ious[c].append(iou)
                d.rows.append(
                    {
                        "row": r,
                        "image_id": records[i].image_id,
                        "index": i,
                        "column": s.label,
                        "threshold": thr[c] if localize else float("nan"),
                        "x0": int(box[0]),
                        "y0": int(box[1]),
                        "x1": int(box[2]),
                        "y1": int(box[3]),
                        "iou": iou,
                    }
                )
        return d


# ------------------------------------------------------------------------------------ curves
def _curve_file(run: Path) -> Path:
    run = Path(run)
    path = run / CURVE_CSV if run.is_dir() else run
    if not path.is_file():
        raise SimpoolBenchError(f"--curves {run}: no {CURVE_CSV} there (written by `simpool-bench localize --out`)")
    from .results import verify_run_file

    verify_run_file(path)  # never a curve of another write than the folder's results
    return path


def read_curve(run: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(thresholds (T,), BoxAcc (T, J), IoU thresholds (J,)) of a localize run's boxacc_curve.csv."""
    path = _curve_file(Path(run))
    try:
        df = pd.read_csv(path, compression=None)  # plain text as localize writes it, whatever the name ends with (.tar: a TarError)
    except (OSError, ValueError) as err:
        raise SimpoolBenchError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from None  # pandas' own ends in a line break
    cols = [c for c in df.columns if c.startswith("boxacc_")]
    if "threshold" not in df.columns or not cols:
        raise SimpoolBenchError(f"{path}: expected columns threshold, boxacc_30, boxacc_50, ... (got {', '.join(map(str, df.columns))})")
    try:
        ious = tuple(int(c.split("_", 1)[1]) for c in cols)
    except ValueError:
        raise SimpoolBenchError(f"{path}: column names {cols} must be boxacc_<IoU percent>") from None
    table = df[["threshold", *cols]]
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = np.argwhere(numbers.isna().to_numpy() & table.notna().to_numpy())
    if len(bad):  # a hand-edited or damaged curve: one line, not a traceback from the plot
        r, c = bad[0]
        raise SimpoolBenchError(f"{path}: line {r + 2}, column {table.columns[c]!r}: {table.iat[r, c]!r} is not a number")
    return numbers["threshold"].to_numpy(float), numbers[cols].to_numpy(float), ious


def plot_curves(runs: Sequence[str | os.PathLike], out_path: str | os.PathLike, labels: Sequence[str] | None = None) -> Path:
    """BoxAcc-vs-threshold curves of several localize runs in one PNG (``plotting.boxacc_curves``),
    labelled by run folder name (or ``labels``)."""
    if not runs:
        raise SimpoolBenchError("--curves: no run given")
    if labels is not None and len(labels) != len(runs):
        raise SimpoolBenchError(f"{len(labels)} labels for {len(runs)} curves")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ious0: tuple[int, ...] | None = None
    for k, run in enumerate(runs):
        thr, acc, ious = read_curve(run)
        if ious0 is not None and ious != ious0:
            raise SimpoolBenchError(f"--curves {run}: IoU thresholds {ious} differ from the first run's {ious0}")
        ious0 = ious
        p = Path(run)
        name = labels[k] if labels is not None else (p.name if p.is_dir() else p.parent.name)
        base, j = name, 2
        while name in curves:
            name, j = f"{base} ({j})", j + 1
        curves[name] = (thr, acc)
    return boxacc_curves(curves, out_path, iou_thresholds=ious0 or ())


def read_best_threshold(run: str | os.PathLike, iou: int = BEST_THRESHOLD_IOU) -> float:
    """The ``best_threshold`` row at ``iou`` of a localize run (folder or results file)."""
    from .results import read_run

    p = Path(run)
    if p.is_dir():
        found = [p / f for f in ("results.parquet", "results.csv", "results.json") if (p / f).exists()]
        if not found:
            raise SimpoolBenchError(f"--threshold-from {p}: no results.parquet, results.csv or results.json in this folder")
        p = found[0]
    df = read_run(p)
    row = df[(df["metric"] == "best_threshold") & (pd.to_numeric(df["iou_threshold"], errors="coerce") == iou)]
    if row.empty:
        raise SimpoolBenchError(f"--threshold-from {p}: no best_threshold row at IoU {iou} (is it a localize run?)")
    return float(row["value"].iloc[0])
