"""Pictures: attention overlays with boxes (the SimPool paper's figure) and BoxAcc-vs-threshold curves.

``overlay_grid`` composes the grid with numpy/PIL at exact pixel positions (no resampling of the
images, boxes drawn on the pixels they name), so the picture can be checked pixel by pixel;
matplotlib (its Agg canvas, no pyplot) provides the colour map and draws the curves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from .errors import SimpoolBenchError
from .files import atomic_write

GT_COLOR: tuple[int, int, int] = (0, 255, 0)
PRED_COLOR: tuple[int, int, int] = (255, 0, 0)
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
PAD = 4
TITLE_HEIGHT = 18
IOU_LINESTYLES = {30: ":", 50: "-", 70: "--"}


def cell_origin(
    row_heights: Sequence[int], cell_width: int, row: int, col: int, pad: int = PAD, title_height: int = TITLE_HEIGHT
) -> tuple[int, int]:
    """Top-left pixel (x, y) of grid cell (row, col) in ``overlay_grid``'s picture."""
    return pad + col * (cell_width + pad), title_height + pad + sum(h + pad for h in row_heights[:row])


def heatmap_overlay(image: np.ndarray, scoremap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """``image`` (H, W, 3) uint8 blended with ``scoremap`` upsampled to (H, W) (bicubic), min-max
    normalised (a constant or NaN map shows as zeros) and coloured with ``cmap``."""
    h, w = image.shape[:2]
    m: np.ndarray = np.asarray(scoremap, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        raise SimpoolBenchError(f"a score map must be 2-D (h, w); got shape {m.shape}")
    m = cv2.resize(m, (w, h), interpolation=cv2.INTER_CUBIC) if m.shape != (h, w) else m.copy()
    lo, hi = (np.nanmin(m), np.nanmax(m)) if np.isfinite(m).any() else (0.0, 0.0)
    if not np.isfinite(m).all() or hi <= lo:
        m = np.zeros_like(m)
    else:
        m = (m - lo) / (hi - lo)
    heat = (colormaps[cmap](m)[..., :3] * 255.0).astype(np.float32)
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _draw_box(draw: ImageDraw.ImageDraw, box, origin: tuple[int, int], size: tuple[int, int], color, width: int) -> None:
    """Outline of box (x0, y0, x1, y1) (inclusive pixels of the cell's image), growing inwards,
    clipped to the image."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    w, h = size
    x0, x1 = sorted((min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)))
    y0, y1 = sorted((min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)))
    ox, oy = origin
    draw.rectangle([ox + x0, oy + y0, ox + x1, oy + y1], outline=tuple(color), width=width)


def _check_image(img: np.ndarray, i: int) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] == 0 or a.shape[1] == 0:
        raise SimpoolBenchError(f"overlay_grid: image {i} must be an (H, W, 3) uint8 array; got shape {a.shape} dtype {a.dtype}")
    return a


def overlay_grid(
    images: Sequence[np.ndarray],
    maps: Sequence[Sequence[np.ndarray]],
    gt_boxes: Sequence[np.ndarray],
    pred_boxes: Sequence[Sequence[np.ndarray | None]] | None,
    titles: Sequence[str],
    out_path: str | os.PathLike,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    gt_color: tuple[int, int, int] = GT_COLOR,
    pred_color: tuple[int, int, int] = PRED_COLOR,
    line_width: int = 2,
) -> Path:
    """A PNG grid: a row per image; column 0 the image, then one heat-map overlay per model.

    Args:
        images: N images (H, W, 3) uint8.
        maps: one list per model (column) of N score maps (h, w), upsampled to each image's size.
        gt_boxes: N arrays (K, 4) of ground-truth boxes (x0, y0, x1, y1) in image pixels, drawn
            in ``gt_color`` on every cell of the row.
        pred_boxes: one list per model of N boxes (4,) or None, drawn in ``pred_color`` on that
            model's cell; None for no predictions.
        titles: the models' column titles (M), or all M + 1 including the image column.
        out_path: the PNG to write.

    Cell (r, c) starts at ``cell_origin``; the column width is the widest image. Box outlines
    cover the pixels x0..x1, y0..y1 inclusive and grow ``line_width`` pixels inwards.
    """
    imgs = [_check_image(im, i) for i, im in enumerate(images)]
    n, m = len(imgs), len(maps)
    if n == 0:
        raise SimpoolBenchError("overlay_grid: no images given")
    for j, col in enumerate(maps):
        if len(col) != n:
            raise SimpoolBenchError(f"overlay_grid: model {j} has {len(col)} maps for {n} images")
    if len(gt_boxes) != n:
        raise SimpoolBenchError(f"overlay_grid: {len(gt_boxes)} ground-truth box sets for {n} images")
    if pred_boxes is not None and (len(pred_boxes) != m or any(len(p) != n for p in pred_boxes)):
        raise SimpoolBenchError(f"overlay_grid: pred_boxes must be {m} lists (one per model) of {n} boxes or None")
    titles = list(titles)
    if len(titles) == m:
        titles = ["image", *titles]
    if len(titles) != m + 1:
        raise SimpoolBenchError(f"overlay_grid: {len(titles)} titles for {m} models; give {m} (or {m + 1} with the image column)")

    cell_w = max(im.shape[1] for im in imgs)
    heights = [im.shape[0] for im in imgs]
    width = PAD + (m + 1) * (cell_w + PAD)
    height = TITLE_HEIGHT + PAD + sum(h + PAD for h in heights)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, title in enumerate(titles):
        x, _ = cell_origin(heights, cell_w, 0, c)
        draw.text((x + 1, 2), str(title), fill=(0, 0, 0), font=font)

    for r, im in enumerate(imgs):
        h, w = im.shape[:2]
        gt = np.asarray(gt_boxes[r], dtype=np.float64).reshape(-1, 4)
        for c in range(m + 1):
            cell = im if c == 0 else heatmap_overlay(im, maps[c - 1][r], alpha, cmap)
            origin = cell_origin(heights, cell_w, r, c)
            canvas.paste(Image.fromarray(cell), origin)
            for box in gt:
                _draw_box(draw, box, origin, (w, h), gt_color, line_width)
            if c > 0 and pred_boxes is not None and pred_boxes[c - 1][r] is not None:
                box = np.asarray(pred_boxes[c - 1][r], dtype=np.float64).reshape(-1)
                if box.shape != (4,):
                    raise SimpoolBenchError(f"overlay_grid: predicted box of model {c - 1}, image {r} must have 4 numbers")
                _draw_box(draw, box, origin, (w, h), pred_color, line_width)

    out = Path(out_path)
    atomic_write(out, lambda f: canvas.save(f, format="PNG"))
    return out


def boxacc_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out_path: str | os.PathLike,
    *,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    title: str | None = None,
    figsize: tuple[float, float] = (8.0, 5.0),
    dpi: int = 100,
) -> Path:
    """BoxAcc (%) vs score-map threshold for several runs in one plot: a colour per run, a line
    style per IoU threshold, the maximum (MaxBoxAcc) marked. ``curves``: {label: (thresholds (T,),
    boxacc (T, len(iou_thresholds)) or (T,) for one IoU)}. The PNG is figsize * dpi pixels."""
    if not curves:
        raise SimpoolBenchError("boxacc_curves: no curves given")
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    ax = fig.subplots()
    colors = colormaps["tab10"]
    for k, (label, (thr, acc)) in enumerate(curves.items()):
        thr = np.asarray(thr, dtype=np.float64).reshape(-1)
        acc = np.asarray(acc, dtype=np.float64)
        acc = acc.reshape(-1, 1) if acc.ndim == 1 else acc
        if acc.shape[0] != thr.shape[0] or acc.shape[1] not in (1, len(iou_thresholds)):
            raise SimpoolBenchError(
                f"boxacc_curves: curve {label!r}: boxacc shape {acc.shape} does not fit "
                f"{thr.shape[0]} thresholds and IoU thresholds {tuple(iou_thresholds)}"
            )
        ious = iou_thresholds if acc.shape[1] == len(iou_thresholds) else (50,)
        for j, iou in enumerate(ious):
            color = colors(k % 10)
            ax.plot(thr, acc[:, j], linestyle=IOU_LINESTYLES.get(iou, "-."), color=color, label=f"{label} IoU {iou}")
            best = int(np.nanargmax(acc[:, j])) if np.isfinite(acc[:, j]).any() else None
            if best is not None:
                ax.plot([thr[best]], [acc[best, j]], "o", color=color, markersize=4)
    ax.set_xlabel("score-map threshold")
    ax.set_ylabel("BoxAcc (%)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 100.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    out = Path(out_path)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return out
